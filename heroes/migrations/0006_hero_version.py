from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("heroes", "0005_normalize_nicknames"),
    ]

    operations = [
        # A constant default: PostgreSQL adds the column without rewriting the table.
        migrations.AddField(
            model_name="hero",
            name="version",
            field=models.PositiveIntegerField(default=1),
        ),
    ]
