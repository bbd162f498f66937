from django.db import models


class Author(models.Model):
    name = models.CharField(max_length=100)
    age = models.IntegerField(default=0)


class Book(models.Model):
    title = models.CharField(max_length=200, default="")
    pages = models.BigIntegerField()
    author = models.ForeignKey(Author, null=True, on_delete=models.CASCADE)

    class Meta:
        indexes = [models.Index(fields=["pages"], name="shop_book_pages_idx")]
