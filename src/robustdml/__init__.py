"""robustdml: adversarially robust deep metric learning, and honest robustness evaluation.

Layers (a layer imports only from layers below it): cli -> engine -> defenses -> attacks ->
evaluation -> losses -> models -> data. See DESIGN.md in the shared design folder.
"""

__version__ = "0.1.0"
