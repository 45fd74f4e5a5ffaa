__title__ = "spacy-distill"
__version__ = "0.1.0"
