# CMake package of attention.h, installed in <prefix>/lib/cmake/attention/ by `make install` or CMake's
# install rules. find_package(attention CONFIG REQUIRED) gives the INTERFACE target attention::attention:
# the include directory <prefix>/include and, on Unix, libm. The prefix is found from this file's own
# place, so an installed tree may be moved (or staged under DESTDIR) and still found.
get_filename_component(_attention_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET attention::attention)
  add_library(attention::attention INTERFACE IMPORTED)
  set_target_properties(attention::attention PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${_attention_prefix}/include")
  if(UNIX)
    set_target_properties(attention::attention PROPERTIES INTERFACE_LINK_LIBRARIES m)
  endif()
endif()
unset(_attention_prefix)
