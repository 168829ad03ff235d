"""File names of a saved model folder: ours (``save_pretrained``) and the Hugging Face Hub's share them.

Standard library only, so the loader can name files without importing torch.
"""

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
MODEL_FILES = [CONFIG_NAME, WEIGHTS_NAME, CARD_NAME]  # what a model repo needs, and all we fetch from one
