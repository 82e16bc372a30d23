#include "transport_test_fixture.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "tests/support/wait_for.h"

#ifndef HALO_TRANSPORT_PEER_PATH
#error "HALO_TRANSPORT_PEER_PATH must name the halo_transport_peer program"
#endif

namespace halo {
void PrintTo(StatusCode code, std::ostream* os) { *os << status_code_name(code); }
}  // namespace halo

namespace halo::transport::testing {

void PrintTo(const Backend& backend, std::ostream* os) { *os << backend.name; }

std::string backend_test_name(const ::testing::TestParamInfo<Backend>& info) {
  return std::string(info.param.name);
}

Status await(std::future<Status> done, std::chrono::milliseconds limit) {
  if (done.wait_for(limit) != std::future_status::ready) {
    return deadline_exceeded_error(str_cat("operation not complete after ", limit.count(), " ms"));
  }
  return done.get();
}

TransportConfig test_config(const Backend& backend) {
  TransportConfig config;
  config.transport = std::string(backend.transport);
  config.ucx_tls = std::string(backend.ucx_tls);
  if (!backend.ofi_provider.empty()) config.ofi_provider = std::string(backend.ofi_provider);
  config.peer_timeout_ms = kPeerTimeout.count();
  config.keepalive_interval_ms = kKeepaliveInterval.count();
  config.connect_timeout_ms = std::chrono::milliseconds(kStepTimeout).count();
  config.auth_timeout_ms = kAuthTimeout.count();
  return config;
}

std::vector<std::string> config_flags(const TransportConfig& config) {
  return {
      "--transport=" + config.transport,
      "--ucx_tls=" + config.ucx_tls,
      "--ofi_provider=" + config.ofi_provider,
      "--net_interface=" + config.net_interface,
      "--peer_timeout_ms=" + std::to_string(config.peer_timeout_ms),
      "--keepalive_interval_ms=" + std::to_string(config.keepalive_interval_ms),
      "--connect_timeout_ms=" + std::to_string(config.connect_timeout_ms),
      "--auth_timeout_ms=" + std::to_string(config.auth_timeout_ms),
      "--max_am_header_bytes=" + std::to_string(config.max_am_header_bytes),
      "--max_am_payload_bytes=" + std::to_string(config.max_am_payload_bytes),
      "--rma_mechanism=" + config.rma_mechanism,
  };
}

std::string random_secret() {
  std::random_device random;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string secret(32, '0');
  for (char& c : secret) c = kHex[random() % 16];
  return secret;
}

StatusOr<std::unique_ptr<SecretFile>> SecretFile::create() {
  std::string dir_template =
      (std::filesystem::temp_directory_path() / "halo-transport-test-XXXXXX").string();
  if (::mkdtemp(dir_template.data()) == nullptr) {
    return errno_error(errno, "making a temporary directory for the test secret");
  }
  std::string path = dir_template + "/secret";
  std::string secret = random_secret();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return errno_error(errno, str_cat("creating ", path));
  const bool written =
      ::write(fd, secret.data(), secret.size()) == static_cast<ssize_t>(secret.size());
  ::close(fd);
  if (!written) return internal_error(str_cat("writing ", path));
  return std::unique_ptr<SecretFile>(new SecretFile(dir_template, path, secret));
}

SecretFile::~SecretFile() {
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string peer_program() { return HALO_TRANSPORT_PEER_PATH; }

StatusOr<PeerProcess> PeerProcess::start(const TransportConfig& config,
                                         const std::string& secret_path, Options options) {
  std::vector<std::string> argv = {peer_program(), "--listen=" + options.host,
                                   "--secret_file=" + secret_path,
                                   "--region_bytes=" + std::to_string(options.region_bytes)};
  for (auto& flag : config_flags(config)) argv.push_back(std::move(flag));
  for (auto& flag : options.extra_flags) argv.push_back(std::move(flag));
  if (options.child.echo_label.empty()) options.child.echo_label = "peer";
  HALO_ASSIGN_OR_RETURN(test::ChildProcess child,
                        test::ChildProcess::spawn(std::move(argv), std::move(options.child)));
  auto line = child.wait_for_line("LISTENING ", kStepTimeout);
  if (!line.ok()) {
    return line.status().with_context(
        str_cat("halo_transport_peer did not start listening; its output:\n", child.output_text()));
  }
  std::string address = line->substr(std::string_view("LISTENING ").size());
  return PeerProcess(std::move(child), std::move(address));
}

StatusOr<HostPort> parse_host_port(std::string_view address) {
  const size_t scheme = address.find("://");
  std::string_view rest = scheme == std::string_view::npos ? address : address.substr(scheme + 3);
  const size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos) {
    return invalid_argument_error(str_cat("address '", address, "' has no port"));
  }
  const std::string port_text(rest.substr(colon + 1));
  char* end = nullptr;
  const unsigned long port = std::strtoul(port_text.c_str(), &end, 10);
  if (port_text.empty() || *end != '\0' || port == 0 || port > 65535) {
    return invalid_argument_error(str_cat("address '", address, "' has no valid port"));
  }
  return HostPort{std::string(rest.substr(0, colon)), static_cast<uint16_t>(port)};
}

void TransportTest::SetUp() {
  config_ = test_config(GetParam());
  auto secret = SecretFile::create();
  ASSERT_TRUE(secret.ok()) << secret.status();
  secret_ = *std::move(secret);
  auto transport = Transport::create(config_, secret_->secret());
  // A backend that is missing or cannot start is a failure of every test, never a skip.
  ASSERT_TRUE(transport.ok()) << "creating the " << GetParam().name
                              << " transport: " << transport.status();
  transport_ = *std::move(transport);
  auto client = PeerClient::attach(*transport_);
  ASSERT_TRUE(client.ok()) << client.status();
  client_ = *std::move(client);
}

void TransportTest::TearDown() {
  for (auto& ep : endpoints_) ep->close();
  if (transport_) {
    // Regions may be released only once no operation uses them.
    EXPECT_TRUE(
        test::wait_for([&] { return transport_->stats().operations_pending == 0; }, kStepTimeout))
        << transport_->stats().operations_pending << " operations still pending after close()";
  }
  endpoints_.clear();
  locals_.clear();
  client_.reset();
  // The peers go first (killed and reaped): the transport's last act over libfabric's shm
  // provider is to sweep the regions of dead processes, theirs included, so that no test
  // leaves a file in /dev/shm.
  peers_.clear();
  transport_.reset();
  secret_.reset();
}

StatusOr<PeerProcess*> TransportTest::start_peer(size_t region_bytes) {
  PeerProcess::Options options;
  options.region_bytes = region_bytes;
  HALO_ASSIGN_OR_RETURN(PeerProcess peer, PeerProcess::start(config_, secret_->path(), options));
  peers_.push_back(std::make_unique<PeerProcess>(std::move(peer)));
  return peers_.back().get();
}

StatusOr<EndpointPtr> TransportTest::connect_to(const std::string& address,
                                                std::chrono::milliseconds timeout) {
  HALO_ASSIGN_OR_RETURN(EndpointPtr ep, transport_->connect(address, timeout));
  endpoints_.push_back(ep);
  return ep;
}

PeerService::Options TransportTest::service_options(const TransportConfig& config) const {
  PeerService::Options options;
  options.config = config;
  options.secret = secret_->secret();
  return options;
}

StatusOr<LocalRegion*> TransportTest::register_local(size_t size) {
  HALO_ASSIGN_OR_RETURN(PageBuffer buffer, PageBuffer::allocate(size));
  std::fill(buffer.data(), buffer.data() + size, std::byte{0});
  HALO_ASSIGN_OR_RETURN(auto region, transport_->register_memory(buffer.data(), size));
  locals_.push_back(
      std::make_unique<LocalRegion>(LocalRegion{std::move(buffer), std::move(region)}));
  return locals_.back().get();
}

}  // namespace halo::transport::testing
