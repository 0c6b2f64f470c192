#pragma once
// A checkpoint's manifest, its DONE file: the size and XXH3-128 hash of every other file, written last. A
// checkpoint is complete when its DONE exists, and intact when its files are exactly those the manifest lists,
// byte for byte.
#include <string>

namespace qft {

// Hashes every file of `dir` and writes dir/DONE.
void write_manifest(const std::string& dir);
// Refuses (FileError naming the file) a DONE that is not a manifest, a file missing, added or of another size,
// and a hash mismatch. `hash_large` false hashes only the small files (all but *.safetensors), for a quick look at
// a checkpoint; true is what every load of its tensors does.
void verify_manifest(const std::string& dir, bool hash_large);

}  // namespace qft
