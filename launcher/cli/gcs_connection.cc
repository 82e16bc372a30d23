#include "launcher/cli/gcs_connection.h"

#include <algorithm>
#include <cmath>

#include "gcs/client/cluster_secret.h"
#include "gcs/client/gcs_address.h"
#include "launcher/session/session.h"

namespace halo::launcher::cli {

StatusOr<GcsConnection> connect_to_gcs(const ClusterOptions& options) {
  GcsConnection connection;
  std::string address = options.address;
  connection.secret_file = options.secret_file;
  if (address.empty() || connection.secret_file.empty()) {
    HALO_ASSIGN_OR_RETURN(Session session, Session::open(options.session_dir));
    if (connection.secret_file.empty()) connection.secret_file = session.secret_file();
    if (address.empty()) {
      auto from_session = session.gcs_address();
      if (!from_session.ok()) {
        return not_found_error(str_cat("no halo cluster is running from session ", session.dir(),
                                       ": ", from_session.status().message()));
      }
      address = *from_session;
    }
  }
  transport::TransportConfig transport;
  transport.transport = options.transport;
  HALO_ASSIGN_OR_RETURN(connection.address, gcs::gcs_transport_address(address, transport));
  HALO_ASSIGN_OR_RETURN(std::string secret, gcs::read_secret_file(connection.secret_file));
  gcs::GcsClientOptions client_options;
  client_options.address = connection.address;
  client_options.cluster_secret = std::move(secret);
  client_options.transport = transport;
  const auto timeout = std::chrono::milliseconds(
      static_cast<int64_t>(std::ceil(std::max(options.timeout_s, 0.1) * 1000)));
  client_options.reconnect_timeout = timeout;
  client_options.call_timeout = timeout;
  HALO_ASSIGN_OR_RETURN(connection.client, gcs::GcsClient::create(std::move(client_options)));
  Status connected = connection.client->connect();
  if (!connected.ok()) {
    return unavailable_error(str_cat("the GCS is unreachable: ", connected.message()));
  }
  return connection;
}

}  // namespace halo::launcher::cli
