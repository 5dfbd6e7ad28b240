"""Pure ML (no Django): language models, corpora, activations, SAE training, evaluation, dashboards."""
