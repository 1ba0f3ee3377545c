"""Text: course-style tokenisation, loaders (from tensors or a table), AWD-LSTM, the ULMFiT
learners (a pretrained language model carried over to a new vocabulary)."""

from .awd_lstm import (
    AWDLSTM,
    AWDLSTMLanguageModel,
    EmbeddingDropout,
    LinearDecoder,
    ResetRNNState,
    RNNDropout,
    RNNRegularizer,
    WeightDropout,
)
from .clas_data import SortedTextLoader, TextClasDataLoaders, classifier_dataloaders
from .learners import (
    LMLearner,
    Perplexity,
    TextClassifierLearner,
    language_model_learner,
    text_classifier_learner,
    unigram_perplexity,
)
from .lm_data import LMLoader, TextLMDataLoaders, lm_dataloaders
from .tokenize import SPECIAL_TOKENS, Vocab, decode, tokenize, tokenize_texts

__all__ = [
    "AWDLSTM", "AWDLSTMLanguageModel", "EmbeddingDropout", "LMLearner", "LMLoader",
    "LinearDecoder", "Perplexity", "RNNDropout", "RNNRegularizer", "ResetRNNState",
    "SPECIAL_TOKENS", "SortedTextLoader", "TextClasDataLoaders", "TextClassifierLearner",
    "TextLMDataLoaders", "Vocab", "WeightDropout",
    "classifier_dataloaders", "decode", "language_model_learner", "lm_dataloaders",
    "text_classifier_learner", "tokenize", "tokenize_texts", "unigram_perplexity",
]
