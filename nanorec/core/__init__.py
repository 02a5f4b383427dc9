"""The model and how it learns: the GPT, its loss, sequence packing, the training loop."""
