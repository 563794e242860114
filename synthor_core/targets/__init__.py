"""The target model (tables, controls, numeric controls) and how target tables are read, harmonized and authored."""
