# halo_gtest_discover(TARGET LABELS TIMEOUT [more gtest_discover_tests arguments]): registers
# each case of a GoogleTest binary with ctest, with a timeout and one or more labels
# ("objstore;ha"). Several labels cannot go through gtest_discover_tests' PROPERTIES (CMake
# flattens the list and the second label becomes a property name): they are set by a script
# that runs once the cases are known.
function(halo_gtest_discover target labels timeout)
  gtest_discover_tests(${target} DISCOVERY_TIMEOUT 60 ${ARGN}
    TEST_LIST ${target}_list PROPERTIES TIMEOUT ${timeout})
  file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/${target}_labels.cmake
    "set_tests_properties(\${${target}_list} PROPERTIES LABELS \"${labels}\")\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES
    ${CMAKE_CURRENT_BINARY_DIR}/${target}_labels.cmake)
endfunction()

# halo_tests_resource_lock(TARGET LOCK): the cases of a GoogleTest binary registered with
# halo_gtest_discover never run at the same time as any other test holding LOCK (ctest -j):
# for tests that use a machine-wide resource, such as the one local Slurm cluster.
function(halo_tests_resource_lock target lock)
  file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/${target}_lock.cmake
    "set_tests_properties(\${${target}_list} PROPERTIES RESOURCE_LOCK \"${lock}\")\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES
    ${CMAKE_CURRENT_BINARY_DIR}/${target}_lock.cmake)
endfunction()
