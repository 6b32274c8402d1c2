// PLACEHOLDER: being written.
#include "shardline/map_toml.h"
