from django.db import migrations, models


class Migration(migrations.Migration):
    # The lead points this at 0005_normalize_nicknames when merging issue 9.
    dependencies = [
        ("heroes", "0004_hero_verbose_name_plural"),
    ]

    operations = [
        # A constant default: PostgreSQL adds the column without rewriting the table.
        migrations.AddField(
            model_name="hero",
            name="version",
            field=models.PositiveIntegerField(default=1),
        ),
    ]
