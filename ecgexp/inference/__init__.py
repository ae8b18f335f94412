"""Inference with trained models on any ECGs: the one inference loop (:mod:`.loop`), a trained
model read from its checkpoint (:mod:`.model`), the model's input contract applied to a dataset
(:mod:`.inputs`), the exams of a dataset as batches (:mod:`.dataset`), checks of inputs that
look wrong for the model (:mod:`.screening`), the rows and tables of predictions
(:mod:`.rows`, :mod:`.table`), and a trained network exported to ONNX or TorchScript with its
contract (:mod:`.export`, ``ecgexp-export``). ``ecgexp-predict`` (:mod:`ecgexp.predict`), a
run's splits and external sets, the API, the Challenge interface and heatmaps all predict
through it."""
