# halo_target_warnings(target): the warning set for halo's own code (never for generated or
# third-party code). Warnings are errors when HALO_WERROR is on, as it is in CI.
function(halo_target_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow
    -Wnon-virtual-dtor -Wcast-align -Woverloaded-virtual -Wimplicit-fallthrough)
  if(HALO_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
