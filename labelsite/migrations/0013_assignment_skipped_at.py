from django.db import migrations, models
from django.db.models import F


def skipped_before(apps, schema_editor):
    """Skips made before the field existed count against max_skips as they did: their time is unknown, so
    the lease's start stands in (too long ago to be undone)."""
    Assignment = apps.get_model("labelsite", "Assignment")
    Assignment.objects.filter(status="skipped").update(skipped_at=F("leased_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("labelsite", "0012_judge_only_items"),
    ]

    operations = [
        migrations.AddField(
            model_name="assignment",
            name="skipped_at",
            field=models.DateTimeField(
                blank=True,
                help_text="When the labeller skipped it; kept when the skip is undone (it still counts).",
                null=True,
            ),
        ),
        migrations.RunPython(skipped_before, migrations.RunPython.noop),
    ]
