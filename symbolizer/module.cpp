#include "symbolizer/module.h"

#include <sys/stat.h>

#include "symbolizer/demangle.h"

namespace asyncprobe::symbolizer {

std::unique_ptr<Module> Module::load(const std::string& open_path, const std::string& target_path,
                                     const DebugSearchPaths& paths, std::string* error) {
  std::unique_ptr<Module> m(new Module());
  m->target_path_ = target_path;
  m->object_ = ElfObject::open(open_path, error);
  if (m->object_ == nullptr) return nullptr;
  if (!m->object_->has_debug_info()) {
    m->debug_path_ = find_debug_file(*m->object_, target_path, paths);
    if (!m->debug_path_.empty()) {
      std::string ignored;
      m->debug_ = ElfObject::open(m->debug_path_, &ignored);
      if (m->debug_ == nullptr) m->debug_path_.clear();
    }
  }
  m->dwarf_ = DwarfInfo::open(m->symbol_source());
  return m;
}

std::unique_ptr<Module> Module::from_memory(const std::string& name, std::vector<uint8_t> image,
                                            std::string* error) {
  std::unique_ptr<Module> m(new Module());
  m->target_path_ = name;
  m->object_ = ElfObject::from_memory(name, std::move(image), error);
  if (m->object_ == nullptr) return nullptr;
  m->dwarf_ = DwarfInfo::open(*m->object_);
  return m;
}

std::vector<InlineFrame> Module::symbolize(uint64_t vaddr) const {
  if (dwarf_ != nullptr) {
    auto frames = dwarf_->frames_at(vaddr);
    if (!frames.empty()) {
      // Code that DWARF covers by lines but by no function (thunks, startup code): the symbol
      // table names it, as it would without DWARF.
      if (frames.back().function.empty()) {
        const ElfSymbol* sym = symbol_source().function_at(vaddr);
        if (sym == nullptr && debug_ != nullptr) sym = object_->function_at(vaddr);
        if (sym != nullptr) frames.back().function = demangle(sym->name);
      }
      return frames;
    }
  }
  const ElfSymbol* sym = symbol_source().function_at(vaddr);
  if (sym == nullptr && debug_ != nullptr) sym = object_->function_at(vaddr);
  if (sym == nullptr) return {};
  return {InlineFrame{demangle(sym->name), {}, false}};
}

std::string_view Module::symbol_name(const ElfSymbol& sym) const {
  std::lock_guard<std::mutex> lock(symbol_names_mu_);
  auto it = symbol_names_.find(&sym);
  if (it == symbol_names_.end()) it = symbol_names_.emplace(&sym, demangle(sym.name)).first;
  return it->second;  // a map node: stays where it is
}

void Module::symbolize_refs(uint64_t vaddr, std::vector<FrameRef>* out) const {
  out->clear();
  if (dwarf_ != nullptr) {
    dwarf_->frame_refs_at(vaddr, out);
    if (!out->empty()) {
      // As in symbolize: code DWARF covers by lines only is named from the symbol table.
      if (out->back().function.empty()) {
        const ElfSymbol* sym = symbol_source().function_at(vaddr);
        if (sym == nullptr && debug_ != nullptr) sym = object_->function_at(vaddr);
        if (sym != nullptr) out->back().function = symbol_name(*sym);
      }
      return;
    }
  }
  const ElfSymbol* sym = symbol_source().function_at(vaddr);
  if (sym == nullptr && debug_ != nullptr) sym = object_->function_at(vaddr);
  if (sym != nullptr) out->push_back(FrameRef{symbol_name(*sym), {}, 0, 0, false});
}

bool file_identity_key(const std::string& path, std::string* key) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return false;
  *key = "file:" + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
         std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec);
  return true;
}

std::shared_ptr<Module> ModuleCache::get(const std::string& open_path,
                                         const std::string& target_path, std::string* error) {
  // A file identity first; the build-id key is added once the file is open, so a second copy of
  // the same object (another path, a container layer) is found too.
  std::string file_key;
  if (!file_identity_key(open_path, &file_key)) {
    if (error != nullptr) *error = target_path + ": cannot stat " + open_path;
    return nullptr;
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = modules_.find(file_key);
  if (it != modules_.end()) return it->second;
  std::shared_ptr<Module> m = Module::load(open_path, target_path, paths_, error);
  if (m == nullptr) return nullptr;
  const std::string& id = m->object().build_id();
  if (!id.empty()) {
    auto [bit, inserted] = modules_.emplace("build-id:" + id, m);
    if (!inserted) m = bit->second;
  }
  modules_[file_key] = m;
  return m;
}

}  // namespace asyncprobe::symbolizer
