//! The cmesh launcher: the CLI that spawns a mesh of peer containers, watches it, and
//! extracts and analyzes its reports. (Commands arrive with the one-host launcher issue.)
