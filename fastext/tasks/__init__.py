"""Course tasks built on the Learner: tabular data, collaborative filtering, and more."""
