"""An example of a package that brings its own attention module and backbone to ablate."""
