"""Questions as data: old campaigns' question names become question objects (with the campaign's rubric on
each score question), and each judgment's answer columns (and `extra`) are copied into `answers`.
The next migration drops the old columns. The conversion is written out here, frozen: it must not change
when labelsite.questions does."""

from django.db import migrations, models

COLUMNS = ("domain_explanation", "domain_score", "general_explanation", "general_score", "nice", "comment")
RUBRIC = [
    {"score": 0, "label": "No coherent explanation"},
    {"score": 1, "label": "Coherent but generic (syntax, formatting, common words)"},
    {"score": 2, "label": "Related to the subject but not specific to it"},
    {"score": 3, "label": "A concept specific to the subject"},
]
BATCH = 1000


def _questions(names, rubric):
    out = []
    for panel in ("domain", "general"):
        if panel in names:
            out.append({"key": f"{panel}_explanation", "type": "text", "prompt": f"Explanation from the {panel} examples",
                        "required": False, "panel": panel})  # fmt: skip
            out.append({"key": f"{panel}_score", "type": "score", "prompt": f"Score the explanation from the {panel} examples",
                        "required": True, "rubric": [dict(level) for level in rubric], "panel": panel})  # fmt: skip
    if "nice" in names:
        out.append({"key": "nice", "type": "yesno", "prompt": "Nice feature", "required": False, "panel": None})
    if "comment" in names:
        out.append({"key": "comment", "type": "text", "prompt": "Comment", "required": False, "panel": None})
    for name in names:  # anything else an old campaign named is kept as a free-text question
        if name not in ("domain", "general", "nice", "comment"):
            out.append({"key": str(name), "type": "text", "prompt": str(name), "required": False, "panel": None})
    return out


def forward(apps, schema_editor):
    Campaign = apps.get_model("labelsite", "Campaign")
    Judgment = apps.get_model("labelsite", "Judgment")
    keys_by_campaign = {}
    for campaign in Campaign.objects.all().iterator():
        old = campaign.questions or []
        if not all(isinstance(q, dict) for q in old):
            campaign.questions = _questions(old, campaign.rubric or RUBRIC)
            campaign.save(update_fields=["questions"])
        keys_by_campaign[campaign.pk] = [q["key"] for q in campaign.questions]
    batch = []
    for judgment in Judgment.objects.all().iterator(chunk_size=BATCH):
        columns = {name: getattr(judgment, name) for name in COLUMNS}
        extra = judgment.extra or {}
        answers = {}
        for key in keys_by_campaign[judgment.campaign_id]:
            answers[key] = columns[key] if key in columns else extra.get(key)
        # Values of questions a campaign did not ask are empty by construction; keep any that are not.
        for name, value in columns.items():
            if name not in answers and value not in ("", None, False):
                answers[name] = value
        for key, value in extra.items():
            answers.setdefault(key, value)
        judgment.answers = answers
        batch.append(judgment)
        if len(batch) >= BATCH:
            Judgment.objects.bulk_update(batch, ["answers"])
            batch = []
    Judgment.objects.bulk_update(batch, ["answers"])


def backward(apps, schema_editor):
    Campaign = apps.get_model("labelsite", "Campaign")
    Judgment = apps.get_model("labelsite", "Judgment")
    for campaign in Campaign.objects.all().iterator():
        questions = campaign.questions or []
        scores = [q for q in questions if isinstance(q, dict) and q.get("type") == "score"]
        keys = {q["key"] if isinstance(q, dict) else q for q in questions}
        names = [g for g in ("domain", "general") if {f"{g}_explanation", f"{g}_score"} & keys]
        names += [g for g in ("nice", "comment") if g in keys]
        campaign.rubric = scores[0]["rubric"] if scores else RUBRIC
        campaign.questions = names
        campaign.save(update_fields=["rubric", "questions"])
    batch = []
    for judgment in Judgment.objects.all().iterator(chunk_size=BATCH):
        answers = dict(judgment.answers or {})
        judgment.domain_explanation = answers.pop("domain_explanation", "") or ""
        judgment.domain_score = answers.pop("domain_score", None)
        judgment.general_explanation = answers.pop("general_explanation", "") or ""
        judgment.general_score = answers.pop("general_score", None)
        judgment.nice = bool(answers.pop("nice", False))
        judgment.comment = answers.pop("comment", "") or ""
        judgment.extra = answers
        batch.append(judgment)
        if len(batch) >= BATCH:
            Judgment.objects.bulk_update(batch, [*COLUMNS, "extra"])
            batch = []
    Judgment.objects.bulk_update(batch, [*COLUMNS, "extra"])


class Migration(migrations.Migration):
    dependencies = [("labelsite", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="judgment",
            name="answers",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.RunPython(forward, backward),
    ]
