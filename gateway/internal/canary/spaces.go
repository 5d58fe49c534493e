package canary

import (
	"context"
	"net/http"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
)

// Spaces is the part of search a rollout changes: collections (vector
// spaces) and the aliases that say which one is live.
type Spaces interface {
	Aliases(ctx context.Context) ([]searchv1.AliasInfo, error)
	Collections(ctx context.Context) ([]searchv1.CollectionInfo, error)
	CreateCollection(ctx context.Context, r searchv1.CreateCollectionRequest) (searchv1.CollectionInfo, error)
	SwitchAlias(ctx context.Context, alias, collection string) (searchv1.AliasInfo, error)
	DeleteAlias(ctx context.Context, alias string) error
	DropCollection(ctx context.Context, name string) error
}

// Doer sends HTTP requests (the gateway's balanced, guarded pool is one).
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// SearchSpaces implements Spaces on a searchv1 client, where removing what
// is already gone succeeds (a rollout step may be retried).
type SearchSpaces struct {
	*searchv1.Client
}

// DeleteAlias removes an alias; removing an absent alias succeeds.
func (s SearchSpaces) DeleteAlias(ctx context.Context, alias string) error {
	err := s.Client.DeleteAlias(ctx, alias)
	if apierror.CodeOf(err) == apierror.CodeNotFound {
		return nil
	}
	return err
}

// DropCollection deletes a collection; dropping an absent one succeeds.
func (s SearchSpaces) DropCollection(ctx context.Context, name string) error {
	err := s.Client.DropCollection(ctx, name)
	if apierror.CodeOf(err) == apierror.CodeNotFound {
		return nil
	}
	return err
}
