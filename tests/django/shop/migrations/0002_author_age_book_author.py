from django.db import migrations, models
import django.db.models.deletion


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]

    operations = [
        # ADD COLUMN ... DEFAULT 0 NOT NULL, then DROP DEFAULT.
        migrations.AddField(
            model_name="author",
            name="age",
            field=models.IntegerField(default=0),
        ),
        # ADD COLUMN ... REFERENCES ... DEFERRABLE INITIALLY DEFERRED;
        # SET CONSTRAINTS ... IMMEDIATE (one Query), then CREATE INDEX.
        migrations.AddField(
            model_name="book",
            name="author",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                to="shop.author",
            ),
        ),
    ]
