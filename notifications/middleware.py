from dramatiq.middleware import Middleware


class DeliveryStatusMiddleware(Middleware):
    """Marks a notification's Delivery failed when its message fails for good."""

    def after_nack(self, broker, message):
        from .delivery import mark_failed

        delivery_id = message.kwargs.get("delivery_id")
        if delivery_id is not None and message.actor_name.startswith("deliver_"):
            mark_failed(delivery_id, message._exception)
