#include "ofi/ofi_domain.h"

#include "ofi/ofi_library.h"

#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>

#include <algorithm>
#include <cstring>

namespace halo::transport::internal::ofi {
namespace {

// The libfabric API version halo is written against (Debian 12 ships 1.17).
constexpr uint32_t kFiVersion = FI_VERSION(1, 17);

std::string provider_for(const std::string& configured) {
  // The tcp provider offers FI_EP_MSG; FI_EP_RDM over it comes from the rxm utility provider.
  if (configured == "tcp") return "tcp;ofi_rxm";
  if (configured == "verbs") return "verbs;ofi_rxm";
  return configured;
}

std::string scheme_for(const std::string& provider) {
  return "ofi+" + provider.substr(0, provider.find(';'));
}

struct InfoDeleter {
  void operator()(fi_info* info) const { OfiLibrary::api().freeinfo(info); }
};
using InfoPtr = std::unique_ptr<fi_info, InfoDeleter>;

InfoPtr make_hints(const std::string& provider, bool resource_management) {
  InfoPtr hints(OfiLibrary::api().dupinfo(nullptr));  // fi_allocinfo()
  if (!hints) return hints;
  hints->ep_attr->type = FI_EP_RDM;
  hints->caps = FI_MSG | FI_RMA | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE;
  // Every operation context halo passes starts with a struct fi_context2.
  hints->mode = FI_CONTEXT | FI_CONTEXT2;
  // The registration modes halo handles (FI_MR_RAW is not among them: see docs/transport.md).
  hints->domain_attr->mr_mode =
      FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT;
  // Every data-path call comes from the progress thread.
  hints->domain_attr->threading = FI_THREAD_DOMAIN;
  if (resource_management) hints->domain_attr->resource_mgmt = FI_RM_ENABLED;
  // Sends arrive in order (active messages and rendezvous descriptors keep their order) and a
  // read is not performed before earlier writes (what flush relies on).
  hints->tx_attr->msg_order = FI_ORDER_SAS | FI_ORDER_RAW;
  hints->fabric_attr->prov_name = strdup(provider.c_str());
  return hints;
}

}  // namespace

std::string fi_error_text(std::string_view call, int ret) {
  const int err = ret < 0 ? -ret : ret;
  return str_cat(call, ": ", OfiLibrary::api().strerror(err), " (", ret, ")");
}

Status fi_status(std::string_view call, int ret) {
  const int err = ret < 0 ? -ret : ret;
  std::string text = fi_error_text(call, ret);
  switch (err) {
    case FI_ECONNREFUSED:
    case FI_ECONNRESET:
    case FI_ECONNABORTED:
    case FI_ENOTCONN:
    case FI_EHOSTUNREACH:
    case FI_ENETUNREACH:
    case FI_ENETDOWN:
    case FI_ETIMEDOUT:
    case FI_EIO:
    case FI_ESHUTDOWN:
    case FI_EADDRNOTAVAIL:
      return unavailable_error(std::move(text));
    case FI_ECANCELED:
      return cancelled_error(std::move(text));
    case FI_ENOMEM:
    case FI_ENOSPC:
    case FI_EAGAIN:
      return resource_exhausted_error(std::move(text));
    case FI_EINVAL:
    case FI_EMSGSIZE:
      return invalid_argument_error(std::move(text));
    case FI_EACCES:
    case FI_EPERM:
    case FI_EKEYREJECTED:
      return permission_denied_error(std::move(text));
    case FI_EADDRINUSE:
      return already_exists_error(std::move(text));
    case FI_ENODATA:
    case FI_ENOSYS:
    case FI_EOPNOTSUPP:
      return unimplemented_error(std::move(text));
    default:
      return internal_error(std::move(text));
  }
}

StatusOr<std::shared_ptr<OfiDomain>> OfiDomain::open(const TransportConfig& config) {
  HALO_ASSIGN_OR_RETURN(const OfiLibrary* fi, OfiLibrary::get());
  const std::string provider = provider_for(config.ofi_provider);
  fi_info* list = nullptr;
  int ret = -FI_ENODATA;
  for (bool resource_management : {true, false}) {
    InfoPtr hints = make_hints(provider, resource_management);
    if (!hints) return resource_exhausted_error("fi_allocinfo: out of memory");
    ret = fi->getinfo(kFiVersion, nullptr, nullptr, 0, hints.get(), &list);
    if (ret == 0) break;
  }
  if (ret != 0) {
    return unavailable_error(str_cat(
        "libfabric provider '", provider, "' offers no FI_EP_RDM endpoint with messages and RMA (",
        fi_error_text("fi_getinfo", ret), "); check `fi_info -p ", provider,
        " -t FI_EP_RDM` and the ofi_provider setting (HALO_OFI_PROVIDER)"));
  }
  InfoPtr all(list);
  const fi_info* chosen = list;
  if (!config.net_interface.empty()) {
    for (const fi_info* i = list; i != nullptr; i = i->next) {
      if (i->domain_attr->name != nullptr && config.net_interface == i->domain_attr->name) {
        chosen = i;
        break;
      }
    }
  }
  std::shared_ptr<OfiDomain> d(new OfiDomain());
  d->info_ = fi->dupinfo(chosen);
  if (d->info_ == nullptr) return resource_exhausted_error("fi_dupinfo: out of memory");
  d->provider_ = chosen->fabric_attr->prov_name ? chosen->fabric_attr->prov_name : provider;
  d->scheme_ = scheme_for(provider);
  ret = fi->fabric(d->info_->fabric_attr, &d->fabric_, nullptr);
  if (ret != 0) return fi_status("fi_fabric", ret).with_context("opening libfabric " + provider);
  ret = fi_domain(d->fabric_, d->info_, &d->domain_, nullptr);
  if (ret != 0) return fi_status("fi_domain", ret).with_context("opening libfabric " + provider);
  return d;
}

OfiDomain::~OfiDomain() {
  if (domain_ != nullptr) fi_close(&domain_->fid);
  if (fabric_ != nullptr) fi_close(&fabric_->fid);
  if (info_ != nullptr) OfiLibrary::api().freeinfo(info_);
}

StatusOr<fid_mr*> OfiDomain::register_buffer(void* data, size_t size, fid_ep* ep) {
  uint64_t requested_key = 0;
  if (!prov_key()) {
    std::lock_guard lock(key_mu_);
    requested_key = next_key_++;
  }
  const uint64_t access = FI_SEND | FI_RECV | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE;
  fid_mr* mr = nullptr;
  int ret = fi_mr_reg(domain_, data, size, access, 0, requested_key, 0, &mr, nullptr);
  if (ret != 0) return fi_status("fi_mr_reg", ret);
  if (mr_endpoint()) {
    if (ep == nullptr) {
      fi_close(&mr->fid);
      return failed_precondition_error("fi_mr_reg: the provider binds memory to an endpoint");
    }
    ret = fi_mr_bind(mr, &ep->fid, 0);
    if (ret == 0) ret = fi_mr_enable(mr);
    if (ret != 0) {
      fi_close(&mr->fid);
      return fi_status("fi_mr_bind/fi_mr_enable", ret);
    }
  }
  return mr;
}

void OfiDomain::attach(ProgressRunner run, OnProgressThread on_thread,
                       std::atomic<uint64_t>* registered_bytes) {
  std::lock_guard lock(mu_);
  run_ = std::move(run);
  on_thread_ = std::move(on_thread);
  registered_bytes_ = registered_bytes;
}

void OfiDomain::count_registered(int64_t delta) {
  std::lock_guard lock(mu_);
  if (registered_bytes_ != nullptr) registered_bytes_->fetch_add(static_cast<uint64_t>(delta));
}

void OfiDomain::detach() {
  std::lock_guard lock(mu_);
  run_ = nullptr;
  on_thread_ = nullptr;
  registered_bytes_ = nullptr;
  close_doomed_locked();
}

void OfiDomain::close_doomed_locked() {
  for (fid_mr* mr : doomed_) fi_close(&mr->fid);
  doomed_.clear();
  closed_cv_.notify_all();
}

void OfiDomain::close_mr(fid_mr* mr) {
  if (mr == nullptr) return;
  std::unique_lock lock(mu_);
  if (!run_ || thread_safe() || on_thread_()) {
    fi_close(&mr->fid);
    return;
  }
  doomed_.push_back(mr);
  run_([self = shared_from_this()] {
    std::lock_guard inner(self->mu_);
    self->close_doomed_locked();
  });
  closed_cv_.wait(lock,
                  [&] { return std::find(doomed_.begin(), doomed_.end(), mr) == doomed_.end(); });
}

}  // namespace halo::transport::internal::ofi
