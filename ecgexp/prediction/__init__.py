"""Prediction with a trained model on any ECGs (``ecgexp-predict``, external test sets): the
model's input contract applied to a dataset (:mod:`.inputs`), checks of inputs that look
wrong for the model (:mod:`.screening`) and the batched prediction itself (:mod:`.predictor`)."""
