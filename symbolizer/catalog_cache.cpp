#include "symbolizer/catalog_cache.h"

#include <algorithm>

namespace asyncprobe::symbolizer {

std::shared_ptr<const CachedObject> CatalogCache::find_locked(const std::string& key) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return nullptr;
  auto live = it->second.lock();
  if (live == nullptr) entries_.erase(it);
  return live;
}

// Expired entries go when the map has doubled since the last pass: amortised, and the map stays
// within twice the live objects.
void CatalogCache::prune_locked() {
  if (entries_.size() < prune_at_) return;
  for (auto it = entries_.begin(); it != entries_.end();) {
    it = it->second.expired() ? entries_.erase(it) : std::next(it);
  }
  prune_at_ = std::max<size_t>(64, 2 * entries_.size());
}

std::shared_ptr<const CachedObject> CatalogCache::get(const std::string& open_path,
                                                      const std::string& target_path,
                                                      const DebugSearchPaths& paths, bool* shared,
                                                      std::string* error) {
  if (shared != nullptr) *shared = false;
  std::string file_key;
  if (!file_identity_key(open_path, &file_key)) {
    if (error != nullptr) *error = target_path + ": cannot stat " + open_path;
    return nullptr;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto hit = find_locked(file_key)) {
      ++reuses_;
      if (shared != nullptr) *shared = true;
      return hit;
    }
  }
  // Loading takes long (ELF, DWARF, the catalog's walk): not under the lock.
  std::shared_ptr<Module> module = Module::load(open_path, target_path, paths, error);
  if (module == nullptr) return nullptr;
  const std::string& id = module->object().build_id();
  auto obj = std::make_shared<CachedObject>();
  obj->module = module;
  obj->catalog = std::make_shared<CoroCatalog>(module);
  std::lock_guard<std::mutex> lock(mu_);
  // Another copy of the same object (another path, a container layer) already loaded.
  if (!id.empty()) {
    if (auto hit = find_locked("build-id:" + id)) {
      entries_[file_key] = hit;
      ++reuses_;
      if (shared != nullptr) *shared = true;
      return hit;
    }
  }
  ++loads_;
  prune_locked();
  entries_[file_key] = obj;
  if (!id.empty()) entries_["build-id:" + id] = obj;
  return obj;
}

size_t CatalogCache::loads() const {
  std::lock_guard<std::mutex> lock(mu_);
  return loads_;
}

size_t CatalogCache::reuses() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reuses_;
}

}  // namespace asyncprobe::symbolizer
