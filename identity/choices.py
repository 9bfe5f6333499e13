from django.db import models


class WorkerKind(models.TextChoices):
    THINK = "think", "Think"
    LEARNING = "learning", "Learning"
    ANALYSIS = "analysis", "Analysis"
    DREAM = "dream", "Dream"
    RECALL = "recall", "Recall"
    CUSTOM = "custom", "Custom"


BUILTIN_WORKERS = ("think", "learning", "analysis", "dream", "recall")
