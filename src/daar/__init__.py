"""daar: Diversity as a Reward data selection for LLM fine-tuning."""

__version__ = "0.1.0"
