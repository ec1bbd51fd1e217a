"""memberbot: a membership program inside a WeChat Official Account."""
