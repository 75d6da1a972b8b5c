from django.apps import AppConfig


class MirrorConfig(AppConfig):
    name = "antenna_invariants.mirror"
    label = "antenna"
    verbose_name = "Mirror of Antenna's tables"
