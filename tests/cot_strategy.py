"""A prompted strategy that lives outside harness/strategies/prompted.py (as a team's own chain-of-thought
strategy would): it declares its family and nothing else tells the report what it is. It answers every item with
the training split's most common label and charges a per-item API price, so runs need no model."""
from __future__ import annotations

from collections import Counter

from harness.strategies.base import API, PROMPTED, Prediction, Strategy


class MajorityPrompt(Strategy):
    family = PROMPTED
    billing = API
    prompts = True
    model_name = "some-api-model"

    def __init__(self, *, name: str, usd_per_item: float = 0.002) -> None:
        super().__init__(name=name)
        self.usd_per_item = usd_per_item

    def fit(self, train, services):
        self.label_ = Counter(ex.label for ex in train.train).most_common(1)[0][0]
        return self

    def predict(self, items):
        for ex in items:
            yield Prediction(item_id=ex.id, gold=ex.label, pred=self.label_, raw=self.label_, latency_ms=300.0,
                             prompt_tokens=400, completion_tokens=3, cost_usd=self.usd_per_item,
                             spent_usd=self.usd_per_item)
