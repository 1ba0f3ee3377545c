"""Text: course-style tokenisation, language-model loaders, AWD-LSTM, the ULMFiT learners."""
