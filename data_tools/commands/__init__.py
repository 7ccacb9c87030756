"""One thin module per `medseg-data` subcommand."""
