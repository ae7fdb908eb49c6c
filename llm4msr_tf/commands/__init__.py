"""CLI subcommands, one module each; see `llm4msr_tf.cli.COMMAND_MODULES`."""
