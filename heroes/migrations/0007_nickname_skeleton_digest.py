"""Nicknames that look alike are one nickname (SPEC §11, Unicode TR39).

The model now refuses characters that render as nothing, nicknames with nothing
visible and words mixing look-alike letters of different scripts, and keeps in
`skeleton_digest` a digest of each nickname's confusable skeleton
(heroes.lookalikes.skeleton_digest), unique (`uq_hrs_heroes_skeleton_digest`), so that
"Zed" with a Cyrillic e (U+0435) clashes with "Zed" as "ZED" does.

Existing rows are checked without losing anything: no nickname is changed.

- Every row gets its digest, except a row whose nickname looks like an older hero's
  (the same digest): the oldest of such a group keeps the digest, the others keep
  NULL (the constraint allows NULLs), and each is reported in the migration's log, with
  the hero it looks like. A NULL digest is filled by the hero's next save, which then
  asks for another nickname; new heroes looking like any of the group are refused.
- A nickname that breaks the new character rules is reported too, and kept: the
  admin and the pages ask for a valid one at the hero's next edit.

It reads every nickname once and writes each row's digest (in batches), then builds
the unique index. Reversing it drops the column and the constraint.
"""

import logging

from django.core.exceptions import ValidationError
from django.db import migrations, models
from django.db.models import Count

import heroes.models
from heroes.lookalikes import skeleton_digest
from heroes.models import NICKNAME_VALIDATORS

logger = logging.getLogger("heroes.migrations")
BATCH = 2000


def broken_rules(nickname: str) -> list[str]:
    """What the nickname rules say of `nickname` now (nothing: it follows them)."""
    messages = []
    for validate in NICKNAME_VALIDATORS:
        try:
            validate(nickname)
        except ValidationError as error:
            messages.extend(error.messages)
    return messages


def fill_skeleton_digests(apps, schema_editor) -> None:
    Hero = apps.get_model("heroes", "Hero")
    rows = Hero.objects.using(schema_editor.connection.alias)
    batch = []
    for pk, nickname in rows.values_list("pk", "nickname").iterator(chunk_size=BATCH):
        if broken := broken_rules(nickname):
            logger.warning("Hero %s: nickname %r kept: %s", pk, nickname, " ".join(broken))
        batch.append(Hero(pk=pk, skeleton_digest=skeleton_digest(nickname)))
        if len(batch) == BATCH:
            rows.bulk_update(batch, ["skeleton_digest"])
            batch = []
    rows.bulk_update(batch, ["skeleton_digest"])

    # Look-alikes: the oldest keeps the digest, the others are reported and keep NULL.
    shared = (
        rows.values("skeleton_digest").annotate(heroes=Count("pk")).filter(heroes__gt=1)
    ).values_list("skeleton_digest", flat=True)
    for digest in shared.iterator():
        oldest, *look_alikes = rows.filter(skeleton_digest=digest).order_by("created_at", "pk")
        for hero in look_alikes:
            logger.warning(
                "Hero %s: nickname %r looks like hero %s's %r: kept, with no skeleton "
                "digest until it is renamed.",
                hero.pk,
                hero.nickname,
                oldest.pk,
                oldest.nickname,
            )
        rows.filter(pk__in=[hero.pk for hero in look_alikes]).update(skeleton_digest=None)


class Migration(migrations.Migration):
    dependencies = [
        ("heroes", "0006_hero_version"),
    ]

    operations = [
        migrations.AlterField(
            model_name="hero",
            name="nickname",
            field=models.CharField(
                max_length=255,
                validators=[
                    heroes.models.validate_storable_text,
                    heroes.models.validate_plain_text,
                    heroes.models.validate_visible,
                    heroes.models.validate_single_script_words,
                ],
            ),
        ),
        migrations.AddField(
            model_name="hero",
            name="skeleton_digest",
            field=models.CharField(editable=False, max_length=64, null=True),
        ),
        migrations.RunPython(fill_skeleton_digests, migrations.RunPython.noop, elidable=False),
        migrations.AddConstraint(
            model_name="hero",
            constraint=models.UniqueConstraint(
                fields=("skeleton_digest",),
                name="uq_hrs_heroes_skeleton_digest",
                violation_error_code="nickname_looks_taken",
                violation_error_message="A hero with a nickname that looks the same already exists.",
            ),
        ),
    ]
