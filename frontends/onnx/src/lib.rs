//! ONNX frontend (arrives with the frontends issue).
