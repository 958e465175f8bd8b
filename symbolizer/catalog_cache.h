// Coroutine catalogs shared between the processes one asyncprobe looks at. A catalog (the ELF, its
// debug file, the DWARF walk and the coroutine layouts) is the costly part of attaching; processes
// that map the same object (workers of one service, the same binary in several containers) share
// one. Objects are keyed by build-id, or without one by device, inode, size and mtime of the file.
// The cache holds no object alive by itself: an entry lives while some attached process holds it,
// so the daemon's memory follows the set of objects its watched processes map.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "symbolizer/coro_catalog.h"
#include "symbolizer/module.h"

namespace asyncprobe::symbolizer {

// One object's module and catalog; holding it keeps both alive (and the cache entry).
struct CachedObject {
  std::shared_ptr<Module> module;
  std::shared_ptr<CoroCatalog> catalog;
};

class CatalogCache {
 public:
  // The module and catalog of the file at `open_path` (`target_path`: as the target names it),
  // loaded with `paths` unless a live entry has the same key. `shared` (may be null) tells which.
  // nullptr with `error` when the file is unusable.
  std::shared_ptr<const CachedObject> get(const std::string& open_path,
                                          const std::string& target_path,
                                          const DebugSearchPaths& paths, bool* shared,
                                          std::string* error);
  // Objects loaded, and objects handed out again from the cache, since construction.
  size_t loads() const;
  size_t reuses() const;

 private:
  std::shared_ptr<const CachedObject> find_locked(const std::string& key);
  void prune_locked();

  mutable std::mutex mu_;
  std::map<std::string, std::weak_ptr<const CachedObject>> entries_;
  size_t loads_ = 0;
  size_t reuses_ = 0;
  size_t prune_at_ = 64;
};

}  // namespace asyncprobe::symbolizer
