"""Form templates: the YAML model, its validation, and the layout engine that places fields."""
from .model import FieldSpec, Option, Section, Template, load_template, load_templates, find_template
from .layout import LANGS, PAPER_SIZES_MM, layout_form, parse_langs

__all__ = ["FieldSpec", "Option", "Section", "Template", "load_template", "load_templates",
           "find_template", "layout_form", "parse_langs", "LANGS", "PAPER_SIZES_MM"]
