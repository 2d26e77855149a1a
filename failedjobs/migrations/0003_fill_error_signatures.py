"""Signatures and error codes for the failed jobs recorded before they existed.

Not atomic: each batch commits on its own, so a large table is not one long transaction, and a run
that is stopped goes on where it stopped (only rows without a signature are read).
"""

from django.db import migrations

BATCH_SIZE = 2000


def fill_signatures(apps, schema_editor):
    from failedjobs.signatures import error_code, error_signature

    FailedJob = apps.get_model("failedjobs", "FailedJob")
    last_pk = 0
    while True:
        batch = list(
            FailedJob.objects.filter(error_signature="", pk__gt=last_pk)
            .order_by("pk")
            .only("pk", "exception_class", "exception_message")[:BATCH_SIZE]
        )
        if not batch:
            return
        for job in batch:
            job.error_code = error_code(None, job.exception_message)
            job.error_signature = error_signature(job.exception_class, job.exception_message, job.error_code)
        FailedJob.objects.bulk_update(batch, ["error_signature", "error_code"])
        last_pk = batch[-1].pk


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("failedjobs", "0002_error_signature"),
    ]

    operations = [
        migrations.RunPython(fill_signatures, migrations.RunPython.noop, elidable=True),
    ]
