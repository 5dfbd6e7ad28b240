"""Drop the answer columns and the campaign-wide rubric, now held in `answers` and in the questions."""

import labelsite.models
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("labelsite", "0002_questions_as_data")]

    operations = [
        *(
            migrations.RemoveField(model_name="judgment", name=name)
            for name in (
                "domain_explanation",
                "domain_score",
                "general_explanation",
                "general_score",
                "nice",
                "comment",
                "extra",
            )
        ),
        migrations.RemoveField(model_name="campaign", name="rubric"),
        migrations.AlterField(
            model_name="campaign",
            name="questions",
            field=models.JSONField(
                default=labelsite.models.default_questions,
                help_text="Ordered list of question objects (see labelsite.questions).",
            ),
        ),
    ]
