"""Early stopping on the primary evaluation metric (higher is better)."""

__all__ = ["EarlyStop"]


class EarlyStop:
    """Stop after ``patience`` evaluations in a row without an improvement above ``threshold``.

    Parameters
    ----------
    patience : int
        Evaluations without improvement that are tolerated.
    threshold : float
        A score must beat the best one by more than this to count as an improvement
        (PaddleX's 1e-4).
    best : float, optional
        Best score so far (e.g. read back when resuming).
    """

    def __init__(self, patience, threshold=1e-4, best=None):
        self.patience = patience
        self.threshold = threshold
        self.best = best
        self.counter = 0

    def __call__(self, score):
        """Record ``score``; return True when training should stop."""
        if self.best is None or score > self.best + self.threshold:
            self.best = score
            self.counter = 0
            return False
        self.counter += 1
        return self.counter >= self.patience
