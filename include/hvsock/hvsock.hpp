// The whole public API of libhvsock in one include.
#pragma once

#include <hvsock/endpoint.hpp>
#include <hvsock/error.hpp>
#include <hvsock/guid.hpp>
#include <hvsock/listener.hpp>
#include <hvsock/message_socket.hpp>
#include <hvsock/result.hpp>
#include <hvsock/service_id.hpp>
#include <hvsock/socket_type.hpp>
#include <hvsock/stream.hpp>
#include <hvsock/unique_fd.hpp>
#include <hvsock/vm_id.hpp>
