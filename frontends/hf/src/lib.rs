//! Hugging Face `config.json` + safetensors frontend (arrives with the frontends issue).
