// PLACEHOLDER: being written.
#include "shardline/shard_map.h"
