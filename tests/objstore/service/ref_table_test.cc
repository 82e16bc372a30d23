// The reference-counting decisions of a node (objstore/service/ref_table.h), without I/O.
#include "objstore/service/ref_table.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace halo::objstore {
namespace {

const std::string kSelf = "ucx://198.18.0.1:4000";
const std::string kOther = "ucx://198.18.0.2:4000";

bool contains(const std::vector<ObjectId>& ids, const ObjectId& id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

TEST(RefTable, ObjectCreatedHereIsFreedWhenItsCreatorDropsTheOnlyReference) {
  RefTable refs(kSelf);
  const ObjectId id = ObjectId::random();
  refs.created(id, 20);
  RefActions a = refs.remove_refs(20, {id});
  EXPECT_TRUE(contains(a.free, id));
  EXPECT_TRUE(a.unborrow.empty());
  EXPECT_FALSE(refs.referenced(id));
}

TEST(RefTable, ObjectLivesWhileAnyLocalClientHoldsIt) {
  RefTable refs(kSelf);
  const ObjectId id = ObjectId::random();
  refs.created(id, 20);
  ASSERT_TRUE(refs.add_refs(21, {{id, kSelf}}).ok());
  EXPECT_TRUE(refs.remove_refs(20, {id}).free.empty());
  EXPECT_TRUE(contains(refs.remove_refs(21, {id}).free, id));
}

TEST(RefTable, BorrowingNodeKeepsTheOwnersObjectAliveUntilItUnborrows) {
  RefTable owner(kSelf);
  const ObjectId id = ObjectId::random();
  const NodeId borrower = NodeId::random();
  owner.created(id, 20);
  ASSERT_TRUE(owner.add_borrower(id, borrower).ok());
  EXPECT_TRUE(owner.remove_refs(20, {id}).free.empty()) << "a borrower still holds it";
  EXPECT_TRUE(contains(owner.remove_borrower(id, borrower).free, id));
}

TEST(RefTable, FirstReferenceToARemoteObjectBorrowsAndLastUnborrowsAndDropsTheCopy) {
  RefTable refs(kSelf);
  const ObjectId id = ObjectId::random();
  auto first = refs.add_refs(20, {{id, kOther}});
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->borrow.size(), 1u);
  EXPECT_EQ(first->borrow[0].owner_address, kOther);
  auto second = refs.add_refs(21, {{id, kOther}});
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(second->borrow.empty()) << "only the first reference borrows";
  EXPECT_TRUE(refs.remove_refs(20, {id}).unborrow.empty());
  RefActions last = refs.remove_refs(21, {id});
  ASSERT_EQ(last.unborrow.size(), 1u);
  EXPECT_TRUE(contains(last.free, id)) << "the secondary copy goes too";
}

TEST(RefTable, DeadClientDropsEveryReferenceItHeld) {
  RefTable refs(kSelf);
  const ObjectId a = ObjectId::random(), b = ObjectId::random();
  refs.created(a, 20);
  refs.created(b, 20);
  RefActions gone = refs.client_gone(20);
  EXPECT_TRUE(contains(gone.free, a));
  EXPECT_TRUE(contains(gone.free, b));
  EXPECT_EQ(refs.size(), 0u);
}

TEST(RefTable, DeadBorrowerNodeNoLongerKeepsObjectsAlive) {
  RefTable owner(kSelf);
  const ObjectId id = ObjectId::random();
  const NodeId borrower = NodeId::random();
  owner.created(id, 20);
  ASSERT_TRUE(owner.add_borrower(id, borrower).ok());
  EXPECT_TRUE(owner.remove_refs(20, {id}).free.empty());
  EXPECT_TRUE(contains(owner.node_gone(borrower).free, id));
}

TEST(RefTable, FreedObjectCannotBeReferencedOrBorrowedAgain) {
  RefTable refs(kSelf);
  const ObjectId id = ObjectId::random();
  refs.created(id, 20);
  refs.remove_refs(20, {id});
  auto again = refs.add_refs(21, {{id, kSelf}});
  EXPECT_EQ(again.status().code(), StatusCode::kFailedPrecondition) << again.status();
  EXPECT_EQ(refs.add_borrower(id, NodeId::random()).code(), StatusCode::kNotFound);
}

TEST(RefTable, RemovingAReferenceNeverHeldChangesNothing) {
  RefTable refs(kSelf);
  const ObjectId id = ObjectId::random();
  refs.created(id, 20);
  RefActions a = refs.remove_refs(99, {id});
  EXPECT_TRUE(a.free.empty());
  EXPECT_TRUE(refs.referenced(id));
}

const std::string kThird = "ucx://198.18.0.3:4000";

// kOther owned an HA object and died; this node (kSelf) repaired it and takes over the count.
TEST(RefTable, AnAdoptedObjectLivesWhileItsHolderOrABorrowerKeepsIt) {
  RefTable refs(kSelf);
  const ObjectId id = ObjectId::random();
  ASSERT_TRUE(refs.add_refs(20, {{id, kOther}}).ok());  // A local client borrowed from kOther.
  refs.adopt(id, 2);
  const NodeId borrower = NodeId::random();
  ASSERT_TRUE(refs.add_borrower(id, borrower).ok());  // Owned here now: borrowers count.
  EXPECT_TRUE(refs.remove_refs(2, {id}).free.empty());
  RefActions a = refs.remove_refs(20, {id});
  EXPECT_TRUE(a.free.empty());
  EXPECT_TRUE(a.unborrow.empty()) << "nothing to tell the dead owner";
  EXPECT_TRUE(contains(refs.remove_borrower(id, borrower).free, id));
  // Freed here, its new home: references with the old owner's address are refused too.
  EXPECT_EQ(refs.add_refs(21, {{id, kOther}}).status().code(), StatusCode::kFailedPrecondition);
}

TEST(RefTable, OwnerMovedRedirectsBorrowsAndSaysWhetherClientsHereHoldIt) {
  RefTable refs(kSelf);
  const ObjectId held = ObjectId::random(), unheld = ObjectId::random();
  ASSERT_TRUE(refs.add_refs(20, {{held, kOther}}).ok());
  EXPECT_TRUE(refs.owner_moved(held, kThird));
  EXPECT_FALSE(refs.owner_moved(unheld, kThird));
  // The last reference unborrows from the new owner.
  RefActions a = refs.remove_refs(20, {held});
  ASSERT_EQ(a.unborrow.size(), 1u);
  EXPECT_EQ(a.unborrow[0].owner_address, kThird);
  // A reference taken later with the old owner's address borrows from the new one.
  auto later = refs.add_refs(21, {{unheld, kOther}});
  ASSERT_TRUE(later.ok());
  ASSERT_EQ(later->borrow.size(), 1u);
  EXPECT_EQ(later->borrow[0].owner_address, kThird);
}

}  // namespace
}  // namespace halo::objstore
