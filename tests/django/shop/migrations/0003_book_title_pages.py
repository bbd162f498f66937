from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("shop", "0002_author_age_book_author")]

    operations = [
        # Nullable to NOT NULL with a default: SET DEFAULT, UPDATE of the
        # NULL rows, SET NOT NULL, DROP DEFAULT.
        migrations.AlterField(
            model_name="book",
            name="title",
            field=models.CharField(default="", max_length=200),
        ),
        # integer to bigint: ALTER COLUMN ... TYPE bigint USING ...
        migrations.AlterField(
            model_name="book",
            name="pages",
            field=models.BigIntegerField(),
        ),
        # An index on the column the same transaction just retyped.
        migrations.AddIndex(
            model_name="book",
            index=models.Index(fields=["pages"], name="shop_book_pages_idx"),
        ),
    ]
