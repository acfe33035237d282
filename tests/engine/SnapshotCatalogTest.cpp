// The snapshot catalog (snapshots.json): what survives saving and loading,
// and what it refuses with a message instead of an exception.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "backend/engine/SnapshotCatalog.hpp"

namespace xbb::backend {
namespace {

class SnapshotCatalogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("xbb-catalog-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path() const { return (dir_ / "snapshots.json").string(); }
  void write(const std::string& text) {
    std::ofstream out(path(), std::ios::trunc);
    out << text;
  }

  std::filesystem::path dir_;
};

TEST_F(SnapshotCatalogTest, AddAndRemoveSurviveAReload) {
  SnapshotCatalog c(path());
  ASSERT_EQ(c.load(), std::nullopt) << "a missing file is an empty catalog";
  ASSERT_EQ(c.add("file:/a.img", "/s/1"), std::nullopt);
  ASSERT_EQ(c.add("file:/a.img", "/s/2"), std::nullopt);
  ASSERT_EQ(c.add("ram:1M", "/s/3"), std::nullopt);
  ASSERT_EQ(c.remove("file:/a.img", "/s/1"), std::nullopt);
  SnapshotCatalog again(path());
  ASSERT_EQ(again.load(), std::nullopt);
  EXPECT_EQ(again.stores_of("file:/a.img"), std::vector<std::string>{"/s/2"});
  EXPECT_EQ(again.stores_of("ram:1M"), std::vector<std::string>{"/s/3"});
}

TEST_F(SnapshotCatalogTest, MalformedFilesAreRefusedWithAMessage) {
  for (const char* text : {"", "{", "[]", "{\"origins\": 3}", "{\"origins\": {\"a\": [1]}}", "{\"x\": {}}"}) {
    write(text);
    SnapshotCatalog c(path());
    auto error = c.load();
    ASSERT_TRUE(error.has_value()) << text;
    EXPECT_NE(error->find("malformed"), std::string::npos) << *error;
    EXPECT_TRUE(c.stores_of("a").empty());
  }
}

// Found by fuzz_snapshot: an origin or store path that is not UTF-8 (a file
// name in Latin-1, say; Linux allows any bytes) cannot be written as JSON.
// add() threw instead of returning its error, and the name stayed in memory,
// so every later save (of any origin's snapshots) failed too.
TEST_F(SnapshotCatalogTest, NamesThatAreNotUtf8AreRefusedAndDoNotPoisonLaterSaves) {
  SnapshotCatalog c(path());
  ASSERT_EQ(c.load(), std::nullopt);
  std::optional<std::string> error;
  ASSERT_NO_THROW(error = c.add("file:/\xe9t\xe9.img", "/s/1"));
  ASSERT_TRUE(error.has_value());
  EXPECT_NE(error->find("UTF-8"), std::string::npos) << *error;
  ASSERT_NO_THROW(error = c.add("file:/a.img", "/s/\xff"));
  ASSERT_TRUE(error.has_value());
  EXPECT_TRUE(c.stores_of("file:/a.img").empty());
  ASSERT_EQ(c.add("file:/a.img", "/s/2"), std::nullopt) << "a later, valid record still saves";
  SnapshotCatalog again(path());
  ASSERT_EQ(again.load(), std::nullopt);
  EXPECT_EQ(again.stores_of("file:/a.img"), std::vector<std::string>{"/s/2"});
}

}  // namespace
}  // namespace xbb::backend
