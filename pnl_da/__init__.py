"""pnl-da: domain adaptation and semi-supervised classification with pseudo-negative labels."""

__version__ = "0.1.0"
