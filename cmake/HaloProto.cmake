# halo_proto_library(name PROTOS a.proto b.proto ...): compiles .proto files with protoc into a
# static library `name` whose headers are included as "<folder>/<file>.pb.h" relative to the
# project root (e.g. "transport/proto/rpc.pb.h"). Generated code is built without -Werror.
function(halo_proto_library name)
  cmake_parse_arguments(ARG "" "" "PROTOS" ${ARGN})
  set(srcs)
  set(hdrs)
  foreach(proto ${ARG_PROTOS})
    get_filename_component(abs ${proto} ABSOLUTE)
    file(RELATIVE_PATH rel ${PROJECT_SOURCE_DIR} ${abs})
    string(REGEX REPLACE "\\.proto$" "" stem ${rel})
    set(cc ${PROJECT_BINARY_DIR}/proto/${stem}.pb.cc)
    set(h ${PROJECT_BINARY_DIR}/proto/${stem}.pb.h)
    add_custom_command(
      OUTPUT ${cc} ${h}
      COMMAND protobuf::protoc --proto_path=${PROJECT_SOURCE_DIR}
              --cpp_out=${PROJECT_BINARY_DIR}/proto ${abs}
      DEPENDS ${abs} protobuf::protoc
      COMMENT "protoc ${rel}"
      VERBATIM)
    list(APPEND srcs ${cc})
    list(APPEND hdrs ${h})
  endforeach()
  add_library(${name} STATIC ${srcs} ${hdrs})
  target_include_directories(${name} PUBLIC $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}/proto>)
  target_link_libraries(${name} PUBLIC protobuf::libprotobuf)
endfunction()
