"""failedjobs on its own: any actor's failure is filed once and signalled; retries are signalled first."""

import ast
from pathlib import Path

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from failedjobs import services
from failedjobs.middleware import FailedJobMiddleware
from failedjobs.models import FailedJob
from failedjobs.signals import job_failed, jobs_retried

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker():
    """A broker with none of the project's actors: what failedjobs sees in another project."""
    project_broker = dramatiq.get_broker()
    broker = StubBroker()
    broker.add_middleware(FailedJobMiddleware())
    dramatiq.set_broker(broker)
    yield broker
    dramatiq.set_broker(project_broker)


@pytest.fixture
def worker(broker):
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=1)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def heard():
    """What job_failed and jobs_retried said, in order."""
    said = []

    def on_failed(sender, **kwargs):
        said.append(("failed", kwargs))

    def on_retried(sender, **kwargs):
        said.append(("retried", kwargs))

    job_failed.connect(on_failed)
    jobs_retried.connect(on_retried)
    yield said
    job_failed.disconnect(on_failed)
    jobs_retried.disconnect(on_retried)


def run(broker, worker, actor):
    message = actor.send()
    broker.join(actor.queue_name, fail_fast=False)
    worker.join()
    return message


def test_a_failure_of_any_actor_is_filed_once_and_signalled(broker, worker, heard):
    @dramatiq.actor(broker=broker, max_retries=0)
    def explode():
        raise ValueError("no luck")

    message = run(broker, worker, explode)

    job = FailedJob.objects.get()
    assert (job.message_id, job.actor_name, job.exception_class) == (
        message.message_id,
        "explode",
        "builtins.ValueError",
    )
    [(kind, said)] = heard
    assert kind == "failed"
    assert said["job_id"] == job.pk and said["message"].message_id == message.message_id
    assert isinstance(said["exception"], ValueError)
    assert said["error"] == "ValueError: no luck"


def test_a_retry_raised_from_an_error_is_filed_as_that_error(broker, worker):
    @dramatiq.actor(broker=broker, max_retries=0)
    def give_up():
        try:
            {}["missing"]
        except KeyError as error:
            raise dramatiq.Retry("try later") from error

    run(broker, worker, give_up)

    job = FailedJob.objects.get()
    assert job.exception_class == "builtins.KeyError"
    assert "KeyError" in job.traceback and "Retry" in job.traceback


def test_a_listener_that_fails_leaves_nothing_filed(broker):
    message = dramatiq.Message(queue_name="default", actor_name="gone", args=(), kwargs={}, options={})

    def broken_listener(sender, **kwargs):
        raise RuntimeError("listener down")

    job_failed.connect(broken_listener)
    try:
        with pytest.raises(RuntimeError, match="listener down"):
            services.fail_message(message, ValueError("boom"))
    finally:
        job_failed.disconnect(broken_listener)

    assert not FailedJob.objects.exists()


def test_listeners_hear_of_a_retry_before_the_broker_gets_the_messages(broker, settings, heard):
    settings.QUEUE_ENABLED = True

    @dramatiq.actor(broker=broker)
    def later():
        pass

    services.fail_message(later.message(), ValueError("boom"))
    queue_when_heard = []

    def look_at_the_queue(sender, **kwargs):
        queue_when_heard.append(broker.queues["default"].qsize())

    jobs_retried.connect(look_at_the_queue)
    try:
        result = services.retry_jobs(FailedJob.objects.all())
    finally:
        jobs_retried.disconnect(look_at_the_queue)

    assert result.retried == 1
    [(_, said)] = [entry for entry in heard if entry[0] == "retried"]
    [retried] = said["messages"]
    assert retried.message_id == FailedJob.objects.get().retried_as
    assert queue_when_heard == [0]
    assert broker.queues["default"].qsize() == 1


def test_failedjobs_imports_nothing_from_notifications():
    app = Path(services.__file__).parent
    imported = set()
    for path in app.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)

    assert sorted(name for name in imported if name.split(".")[0] == "notifications") == []
    assert "dramatiq" in imported  # the walk did read the app
