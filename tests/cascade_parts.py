"""A trained strategy whose confidence says exactly when it is right, for cascade tests: it answers every third
item (by its position in the id's digits) wrongly with confidence 0.3 and the others rightly with 0.9."""
from __future__ import annotations

from harness.strategies.base import TRAINED, Prediction, Strategy


class KnowsWhenWrong(Strategy):
    family = TRAINED
    model_name = "oracle"

    def fit(self, train, services):
        self.labels_ = list(train.labels)
        return self

    def predict(self, items):
        for ex in items:
            wrong = sum(map(ord, ex.id)) % 3 == 0
            pred = self.labels_[(self.labels_.index(ex.label) + 1) % len(self.labels_)] if wrong else ex.label
            yield Prediction(item_id=ex.id, gold=ex.label, pred=pred, latency_ms=1.0, cost_usd=1e-6,
                             spent_usd=1e-6, extra={"confidence": 0.3 if wrong else 0.9})
