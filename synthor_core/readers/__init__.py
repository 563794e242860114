"""Project formats in: Synthor person and household projects (``synthor.toml``), PopulationSim working
directories, rules files, and the conversion of a PopulationSim folder into a Synthor household project."""
