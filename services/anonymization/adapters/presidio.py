"""The PiiEngine port on Presidio: batch analysis (spaCy nlp.pipe) + the anonymizer."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial

from presidio_analyzer import AnalyzerEngine, BatchAnalyzerEngine, RecognizerResult
from presidio_analyzer.nlp_engine import NlpEngineProvider
from presidio_analyzer.predefined_recognizers import EmailRecognizer
from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import OperatorConfig

from services.anonymization.adapters.recognizers import OfflineEmailRecognizer, build_recognizers
from services.anonymization.config import AnonymizationSettings
from services.anonymization.domain import Finding, Redacted
from services.anonymization.ports import ReplaceFn

log = logging.getLogger(__name__)


def spacy_analyzer(model: str, language: str = "en") -> AnalyzerEngine:
    """Presidio's analyzer on an installed spaCy pipeline, with offline e-mail validation."""
    provider = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": language, "model_name": model}],
        }
    )
    analyzer = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=[language])
    for recognizer in list(analyzer.registry.recognizers):
        if isinstance(recognizer, EmailRecognizer):
            analyzer.registry.remove_recognizer(recognizer.name)  # type: ignore[has-type]
    analyzer.registry.add_recognizer(OfflineEmailRecognizer(supported_language=language))
    return analyzer


class PresidioEngine:
    """Presidio analyzer + anonymizer with the configured recognizers and entity types."""

    def __init__(self, settings: AnonymizationSettings) -> None:
        for name in ("presidio-analyzer", "presidio-anonymizer"):  # debug logs hold values
            logging.getLogger(name).setLevel(logging.WARNING)
        self.language = settings.language
        self.entities = list(settings.entities)
        self.threshold = settings.score_threshold
        self.batch_size = settings.batch_size
        self.analyzer = spacy_analyzer(settings.spacy_model, settings.language)
        nlp = self.analyzer.nlp_engine.nlp[settings.language]  # type: ignore[attr-defined]
        # Presidio reads tokens, lemmas and entities only: the dependency parser is dead
        # weight (about a third of the pipeline's time with the small English model).
        nlp.select_pipes(disable=[p for p in settings.spacy_disable if p in nlp.pipe_names])
        for recognizer in build_recognizers(settings.all_recognizers(), settings.language):
            self.analyzer.registry.add_recognizer(recognizer)
        self.batch = BatchAnalyzerEngine(self.analyzer)
        self.anonymizer = AnonymizerEngine()

    def analyze(self, texts: Sequence[str]) -> list[list[RecognizerResult]]:
        return self.batch.analyze_iterator(
            list(texts),
            language=self.language,
            batch_size=self.batch_size,
            entities=self.entities,
            score_threshold=self.threshold,
        )

    def process(self, texts: Sequence[str], replace: Sequence[ReplaceFn]) -> list[Redacted]:
        out: list[Redacted] = []
        for text, results, replace_fn in zip(texts, self.analyze(texts), replace, strict=True):
            if not results:
                out.append(Redacted(text))
                continue
            operators = {
                entity: OperatorConfig("custom", {"lambda": partial(replace_fn, entity)})
                for entity in {r.entity_type for r in results}
            }
            engine_result = self.anonymizer.anonymize(text, results, operators)  # type: ignore[arg-type]
            findings = [
                Finding(
                    item.entity_type,
                    item.start,
                    item.end,
                    round(item.score or 0.0, 3),
                    operator="custom",
                )
                for item in sorted(engine_result.items, key=lambda item: item.start)
            ]
            out.append(Redacted(engine_result.text, findings))
        return out

    def ready(self) -> bool:
        return True
