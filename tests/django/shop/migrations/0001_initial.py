import os

from django.db import migrations, models

# SHOP_FILL=1: the initial migration also fills the tables it creates, so
# that one `migrate` creates, fills and then alters them in one session.
FILL = """
INSERT INTO shop_author (name) SELECT 'a' || g FROM generate_series(1, 500) g;
INSERT INTO shop_book (title, pages) SELECT CASE WHEN g % 4 = 0 THEN NULL ELSE 't' || g END, g
  FROM generate_series(1, 5000) g;
"""


class Migration(migrations.Migration):
    initial = True
    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Author",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
                ("name", models.CharField(max_length=100)),
            ],
        ),
        migrations.CreateModel(
            name="Book",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
                ("title", models.CharField(max_length=200, null=True)),
                ("pages", models.IntegerField()),
            ],
        ),
    ]
    if os.environ.get("SHOP_FILL"):
        operations.append(migrations.RunSQL(FILL))
